"""Bytes from Kafka to typed columns: settings, the Kafka source, the Avro codec, the schema registry.

The only package that imports ``kafka`` and ``fastavro`` (the simulator aside).
"""
