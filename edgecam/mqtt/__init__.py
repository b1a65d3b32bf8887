"""``edgecam run --mqtt URL``: labels to an MQTT broker, Home Assistant discovery, commands back.

The camera loop never waits for the network: ``publisher.MqttOutput.write`` only queues label
changes (a bounded queue, oldest dropped first); a publisher thread and paho's network thread do
the rest, reconnecting with back-off. Only start-up waits: a broker that cannot be reached or
refuses us is a one-line error before the first frame.

- ``settings``   the ``mqtt`` config resolved: broker, credentials, names, topics
- ``topics``     the topic contract (``<prefix>/state``, ``/attributes``, ``/set/...``)
- ``payloads``   the JSON of ``attributes`` and ``heartbeat``
- ``discovery``  Home Assistant's retained discovery configs
- ``commands``   ``<prefix>/set/...`` messages to the run's control object
- ``client``     paho: connect (with the reason when it fails), TLS, last will
- ``publisher``  the loop's Output and the thread that publishes
- ``session``    what ``edgecam run`` calls: connect, run, say ``offline``
"""
