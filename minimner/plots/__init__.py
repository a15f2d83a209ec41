"""Plots for inspection (matplotlib, imported lazily so the rest of minimner never needs a display).

* :mod:`minimner.plots.crf`: CRF transitions and one sentence's marginals;
* :mod:`minimner.plots.augment`: semantic-augmentation neighbours;
* :mod:`minimner.plots.attention`: one tweet's text→image / text→object attention and the
  fusion gates (``plot_image_attention``, ``plot_object_attention``, ``plot_gates``,
  ``plot_tweet``, ``feature_crop``);
* :mod:`minimner.plots.training`: training curves from ``metrics.jsonl``
  (``load_metrics``, ``plot_training_curves``).

Import the submodule you need; nothing is re-exported here, so importing ``minimner.plots``
costs nothing.
"""
