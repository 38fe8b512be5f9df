"""A NICo Core simulator: generated GB200 NVL72 sites served over real gRPC
(`forge.Forge`), with power, firmware, ingestion and health behaviour, fault
injection and a ledger of every state-changing call.

Import the pieces from their modules (`simulator.site`, `simulator.server`,
...); this package module stays empty so pure parts load without grpc."""
