"""Running the fusion network: ONNX export, backends (TensorRT, ONNX Runtime, torch), the pipeline."""
