"""The fusion network: configuration, pre-processing, the net, targets, decoding, data sets, training."""
