"""Example fusion_stream plugin: the ``range_filter`` node type."""
