"""The reference trainer: ``stabletrain train CONFIG.yaml`` (config, data, models, schedules,
checkpoint, loop, plot, entry). See docs/trainer.md."""
