"""The operator wing: the `stripe-events` command. It runs on a laptop or in CI, never in Lambda."""
