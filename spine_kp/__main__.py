import sys

from spine_kp.cli.main import main

sys.exit(main())
