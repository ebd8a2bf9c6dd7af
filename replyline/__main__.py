import sys

from replyline.cli import main

sys.exit(main())
