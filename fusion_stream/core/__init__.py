"""Pure data, no processes and no sockets: messages, the wire format, calibration, file formats
(PCD, WAV, KITTI, YAML reading), shared geometry and pictures. Imports only ``fusion_stream.errors``."""
