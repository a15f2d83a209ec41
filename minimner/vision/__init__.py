"""Image side of MSCMT: image loading and preprocessing (:mod:`.images`), image files → ResNet
region grids (:mod:`.features`, shared by the ``features``, ``predict`` and ``explain`` commands)
and Mask R-CNN object labels (:mod:`.objects`). The ResNet encoder itself is
:mod:`minimner.models.resnet`.
"""
from minimner.vision.images import ImageResult, load_batch, load_image  # noqa: F401
from minimner.vision.objects import COCO_CLASSES, object_ids, object_ids_batch  # noqa: F401
