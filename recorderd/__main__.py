from recorderd.cli import main

raise SystemExit(main())
