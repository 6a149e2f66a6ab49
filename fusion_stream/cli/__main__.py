"""``python -m fusion_stream.cli``."""

from fusion_stream.cli.main import main

raise SystemExit(main())
