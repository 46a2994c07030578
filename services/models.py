"""Every service's tables in one metadata, for migrations and test set-up."""

from services.core.models import Base
from services.core.queue import models as queue_models
from services.merchants import models as merchant_models
from services.offers import models as offer_models
from services.offers.events import models as shop_event_models
from services.offers.feedback import models as feedback_models
from services.orders import models as order_models
from services.orders.connectors import models as connector_models
from services.passes import models as pass_models
from services.passes.journeys import models as journey_models
from services.passes.marketing import models as marketing_models
from services.push import models as push_models

__all__ = [
    "Base",
    "connector_models",
    "feedback_models",
    "journey_models",
    "marketing_models",
    "merchant_models",
    "offer_models",
    "order_models",
    "pass_models",
    "push_models",
    "queue_models",
    "shop_event_models",
]
