from canistry.cli import main

raise SystemExit(main())
