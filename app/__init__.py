"""cometjobs: durable orchestration of CometAPI generation jobs."""
