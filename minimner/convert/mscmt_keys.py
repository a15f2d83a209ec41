"""The authors' MSCMT key layout: kept under its old name; it lives in :mod:`minimner.models.mgcmt_state`."""
from minimner.models.mgcmt_state import (AUG_KEYS, FUSION_KEYS, LAYER_TEMPLATE, NEVER_USED_PREFIXES,  # noqa: F401
                                         fusion_keys, layer_keys, minimner_name, original_layout, used_keys)

__all__ = ["LAYER_TEMPLATE", "layer_keys", "original_layout", "fusion_keys", "used_keys", "minimner_name",
           "AUG_KEYS", "FUSION_KEYS", "NEVER_USED_PREFIXES"]
