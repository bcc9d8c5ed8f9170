from mmmi_dsl.cli import main

raise SystemExit(main())
