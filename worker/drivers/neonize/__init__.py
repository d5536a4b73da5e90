"""The ``neonize`` driver: real WhatsApp through whatsmeow (neonize 0.5.2's Go core).

One module per job: ``client`` keeps the Go client's life (start, calls, stop) safe for the
process, ``preflight`` proves the proxy and the path to WhatsApp before a client is started,
``events`` turns whatsmeow's events into the driver's outcomes and listener calls, and
``driver`` runs one connection attempt with them. Importing the package loads none of them.
"""
