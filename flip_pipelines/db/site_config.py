"""Hub-wide switches in FLIP's ``site_config`` table: ``DeploymentMode`` pauses scheduling while a hub is being
deployed or maintained (FLIP's ``is_deployment_mode_enabled``); a missing row means off."""

from sqlmodel import Session, col, select

from flip_pipelines.db.models import SiteConfig
from flip_pipelines.db.transaction import transaction
from flip_pipelines.domain.errors import ConflictError

DEPLOYMENT_MODE_KEY = "DeploymentMode"


class DeploymentModeError(ConflictError):
    """The hub is in deployment mode: no training is queued or started until it is switched off."""


def deployment_mode_in_transaction(session: Session) -> bool:
    return session.exec(
        select(SiteConfig.key).where(SiteConfig.key == DEPLOYMENT_MODE_KEY, col(SiteConfig.value).is_(True))
    ).first() is not None


def refuse_in_deployment_mode(session: Session, what: str) -> None:
    """Raises: DeploymentModeError naming ``what`` was refused, when deployment mode is on."""
    if deployment_mode_in_transaction(session):
        raise DeploymentModeError(f"the hub is in deployment mode: {what} refused until it is switched off "
                                  "(flip-pipelines deployment-mode off)")


def deployment_mode(session: Session) -> bool:
    """Whether scheduling is paused."""
    with transaction(session):
        return deployment_mode_in_transaction(session)


def set_deployment_mode(session: Session, enabled: bool) -> bool:
    """Switch deployment mode on or off (the row is created when missing); returns the previous setting."""
    with transaction(session):
        row = session.get(SiteConfig, DEPLOYMENT_MODE_KEY)
        previous = bool(row.value) if row is not None else False
        if row is None:
            row = SiteConfig(key=DEPLOYMENT_MODE_KEY, value=enabled)
        row.value = enabled
        session.add(row)
        return previous
