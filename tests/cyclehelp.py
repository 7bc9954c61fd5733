"""A tiny random-weight cycle-open model folder, made by the real release code
(training/cycle_release.py) from a fake run, for tests of the engine and the plugin."""
import os
import tempfile

SIZE = 64          # the folder's model.json "size": small, so tests run fast


def make_cycle_model(out: str, seed: int = 0, size: int = SIZE) -> str:
    """Write the cycle-open folder `out` (G_A sketch->color, G_B color->sketch, model.json
    with "lines") from random generators; returns `out`."""
    import torch
    from krita_alac.convert.cyclegan import UResGenerator, save_generator
    from training.cycle_release import release_cycle
    gen = dict(ngf=4, n_down=3, n_blocks=1)
    threads = torch.get_num_threads()
    try:
        torch.manual_seed(seed)
        with tempfile.TemporaryDirectory(prefix="fake_cycle_run_") as run:
            save_generator(UResGenerator(1, 3, **gen), os.path.join(run, "latest_net_G_A.pth"))
            save_generator(UResGenerator(3, 1, **gen), os.path.join(run, "latest_net_G_B.pth"))
            # What release_cycle reads of a run's checkpoint: its step and configuration.
            torch.save({"step": 1, "config": dict(gen, paired_steps=0, size=size, g_b="ures")},
                       os.path.join(run, "last.pth"))
            release_cycle(run, out, size=size)
    finally:
        torch.set_num_threads(threads)
    return out
