"""Runtime safeguards around the order pipeline, one concern per file (see base.Guard). Each
declares the gateway.json options it reads (``OPTIONS``, see options.Option)."""

from .broker_countdown import BrokerCountdown
from .dead_man import DeadMansSwitch
from .rejection_burst import RejectionBurst
from .state_webhook import StateWebhook

# Every safeguard whose options gateway.json may carry.
SAFEGUARDS = (RejectionBurst, DeadMansSwitch, StateWebhook, BrokerCountdown)
