"""`ulmfit-imdb --threads`: the tiny job's wall time with the default (`default_threads()`: the cores not already busy,
shared by the ranks) against torch's own default (one thread per core), on the same machine in one run, the two
settings alternating so that both see the same load. Each run is a fresh process (`python -m ulmfit_lib.ulmfit`)
reading one data cache made first; the seconds include the process start.

    python benchmarks/bench_job_threads.py [--rounds 3] [--out /tmp/threads]
"""
import argparse, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY = ['n_unsup=30', 'n_lm=30', 'n_train=30', 'n_valid=20', 'max_vocab=400', 'emb_sz=16', 'n_hid=32', 'bs=8',
        'seq_len=20', 'clas_bs=8', 'clas_epochs=[1,1,0,1]', 'lm1_epochs=2', 'lm2_epochs=2']


def job(*args):
    "Run the job (smoke profile shrunk to tiny) as a subprocess; its wall seconds and report."
    cmd = [sys.executable, '-m', 'ulmfit_lib.ulmfit', '--profile', 'smoke', '--device', 'cpu', *args, '--set', *TINY]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), MPLBACKEND='Agg')
    t = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--out', default='/tmp/bench_job_threads')
    a = ap.parse_args()
    import torch
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cache = out/'cache'
    if not (cache/'meta.json').is_file(): job('--data-cache', str(cache), '--make-cache')
    cores = len(os.sched_getaffinity(0))
    settings = {'default (--threads not given)': [], f'torch default (--threads {torch.get_num_threads()})': []}
    flags = [[], ['--threads', str(torch.get_num_threads())]]
    threads, loads = {k: [] for k in settings}, []
    for r in range(a.rounds):
        for (name, ts), fl in (zip(settings.items(), flags) if r % 2 == 0 else reversed(list(zip(settings.items(), flags)))):
            loads.append(os.getloadavg()[0])
            ts.append(job('--data-cache', str(cache), '--out', str(out/f'run_{r}_{len(fl)}'), '--no-baseline', *fl))
            dev = json.loads((out/f'run_{r}_{len(fl)}'/'report.json').read_text())['device']
            threads[name].append(int(dev.rsplit(', ', 1)[1].split()[0]))
    print(f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, {platform.processor() or platform.machine()}, {cores} cores, '
          f'load average {min(loads):.1f}-{max(loads):.1f} during the runs, {a.rounds} rounds alternating\n')
    print('| setting | torch threads | seconds per job (median) | each run |\n|---|---|---|---|')
    meds = {}
    for name, ts in settings.items():
        meds[name] = statistics.median(ts)
        print(f'| {name} | {sorted(set(threads[name]))} | {meds[name]:.1f} | {", ".join(f"{t:.1f}" for t in ts)} |')
    a_, b_ = meds.values()
    print(f'\nratio (torch default / default): {b_ / a_:.2f}x')


if __name__ == '__main__': main()
