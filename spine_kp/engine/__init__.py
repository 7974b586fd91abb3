"""The training recipe under PyTorch Lightning: config, losses, LightningModule, callbacks."""
