"""The Flow gRPC API (`v1.Flow`, `flow serve`): inventory reads and writes on
PostgreSQL and Rack objects, operations as TaskSpecs, tasks from Task objects
and the archive. Entry point: nicoflow.service.server."""
