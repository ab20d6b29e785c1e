"""``python -m stream_app`` is the ``stream-app`` command."""

from stream_app.tools.cli import main

raise SystemExit(main())
