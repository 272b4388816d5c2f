from __future__ import annotations

from incidents.cli.main import main

raise SystemExit(main())
