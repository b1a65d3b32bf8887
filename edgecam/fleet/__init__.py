"""``edgecam fleet mqtt://broker``: every edgecam device on an MQTT broker, in one table.

Built only from what the devices leave on the broker (retained availability, state and
attributes, and their heartbeats): nothing is asked of a device. Needs paho-mqtt, imported only
once a broker is contacted.
"""

from edgecam.fleet.broker import PASSWORD_ENV, Broker, BrokerError, parse_broker
from edgecam.fleet.devices import Fleet
from edgecam.fleet.display import watch

__all__ = ["PASSWORD_ENV", "Broker", "BrokerError", "Fleet", "parse_broker", "watch"]
