"""python -m services.drafter: drafts replies and runs the owner approval loop."""

from libs.service import run_service
from services.drafter.service import MIGRATIONS, NAME, build
from services.drafter.settings import DrafterSettings


def main() -> None:
    run_service(DrafterSettings, name=NAME, build=build, migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
