"""python -m services.sender"""

from libs.service import run_service
from services.sender.service import MIGRATIONS, NAME, build
from services.sender.settings import SenderSettings

if __name__ == "__main__":
    run_service(SenderSettings, name=NAME, build=build, migrations=MIGRATIONS)
