"""python -m godminer.training RUN_DIR"""

from godminer.training.run import main

raise SystemExit(main())
