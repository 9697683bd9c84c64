"""Export the generator to ONNX (and TensorRT), with parity checks and the metadata record."""
