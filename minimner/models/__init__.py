"""Models composed from minimner ops: BERT, ResNet and the cross-modal MNER model."""
