"""python -m services.router: applies the routing rules to every inbound message."""

from libs.service import run_service
from services.router.service import MIGRATIONS, NAME, build
from services.router.settings import RouterSettings


def main() -> None:
    run_service(RouterSettings, name=NAME, build=build, migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
