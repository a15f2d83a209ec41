"""Weight converters: PyTorch / safetensors files to NumPy, with strict key accounting."""
