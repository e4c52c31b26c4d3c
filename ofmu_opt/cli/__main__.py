from ofmu_opt.cli import main

raise SystemExit(main())
