"""``python -m services.scheduler``: durable timers and the workflow engine."""

from __future__ import annotations

from libs.service import run_service
from services.scheduler.service import MIGRATIONS, build
from services.scheduler.settings import SchedulerSettings


def main() -> None:
    run_service(SchedulerSettings, name="scheduler", build=build, migrations=MIGRATIONS)


if __name__ == "__main__":
    main()
