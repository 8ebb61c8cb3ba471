"""Message-queue checks: is every nova service connected to RabbitMQ and answering?

``settings`` parses a cloud's ``e2etests.mq`` block; ``services``, ``rabbit`` and
``rpcping`` observe (openstacksdk, the RabbitMQ management API, oslo.messaging);
``verdict`` judges the observations with pure functions; ``probe`` wires one
cloud's checks together for the suite (``e2etests/suites/test_mq.py``) and the
benchmark. Nothing here imports pytest.
"""
