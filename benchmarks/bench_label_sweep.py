"""Where ULMFiT pays: the label sweep at the smoke scale (issue 14). Stages 1-2 once on the smoke profile's sample,
then for each label count N the classifier (fine-tuned encoder), the control (random encoder) and the TF-IDF +
logistic-regression baseline on the first N of the same seeded training sample, all scored on the same 1,000
held-out test reviews. Writes benchmarks/RESULTS_label_sweep.md and benchmarks/label_sweep.png.

    python benchmarks/bench_label_sweep.py [--labels 100,500,1000,2000,8000] [--profile smoke] [--set FIELD=VALUE ...]
        [--data-cache DIR] [--out DIR] [--encoder finetuned] [--report-only]

`--encoder NAME` reuses an encoder already fine-tuned in OUT/models (stages 1-2 skipped); `--report-only` rewrites
the results file from OUT/label_sweep.json (e.g. after an interrupted run: the JSON holds every finished row).
"""
import argparse, json, os, platform, shutil, sys, threading, time, warnings
warnings.filterwarnings('ignore')
from pathlib import Path

HERE = Path(__file__).resolve().parent


class LoadSampler(threading.Thread):
    "The 1-minute load average every `every` seconds, in a daemon thread."
    def __init__(self, every=30):
        super().__init__(daemon=True); self.every, self.samples = every, [os.getloadavg()[0]]
    def run(self):
        while True:
            time.sleep(self.every); self.samples.append(os.getloadavg()[0])


def load_note(load, cores):
    "What the sampled load average says about the seconds in the table."
    if load['mean'] <= cores + 0.5:
        return (f'no more than this job on the {cores} cores (a load average does not show time the host takes from a '
                'virtual machine: check /proc/stat steal before comparing seconds across days).')
    return (f'the {cores} cores were shared with other jobs, so the seconds are inflated (idle would be faster); '
            'accuracies do not depend on it.')


def write_results(res, load, file, plot, argv):
    import torch
    rows, det = res['labels'], {d['n_labels']: d for d in res['details']}
    cfg, smoke = res['config'], None
    from ulmfit_lib.profile import get_profile
    from dataclasses import asdict
    smoke = asdict(get_profile('smoke'))
    changed = {k: v for k, v in cfg.items() if k != 'name' and smoke.get(k) != (tuple(v) if isinstance(v, list) else v)}
    L = [f'# Label sweep: ULMFiT, its control and the TF-IDF baseline against the number of labels', '',
         f'Command: `python benchmarks/bench_label_sweep.py {" ".join(argv)}`', '',
         f'**Machine**: {platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} '
         f'({torch.get_num_threads()} threads), device {res["device"]}. **Date**: {res["date"]}.',
         f'**Load average** (1 min) at start {load["start"]:.1f}, at end {load["end"]:.1f}, min {load["min"]:.1f}, '
         f'mean {load["mean"]:.1f}, max {load["max"]:.1f} (sampled during the run): ' + load_note(load, os.cpu_count()), '',
         f'**Profile**: `{res["profile"]}`' + (f' with {changed}' if changed else ' (unchanged)') +
         f'; stage 3 schedule per label count: `few_label_schedule` (epochs x ceil(sqrt(2000/N)), at most x5). '
         f'Held-out: the same {res["n_valid"]} test reviews for every row and method.', '']
    if res.get('lm'): L += [f'Stages 1-2: LM accuracy {res["lm"]["accuracy"]}, perplexity {res["lm"]["perplexity"]}; '
                            + ', '.join(f'{k} {v:.0f} s' for k, v in res.get('seconds', {}).items()) + '.', '']
    L += ['| labels | ULMFiT | control (no pretraining) | TF-IDF baseline | ULMFiT - baseline | classifier epochs | baseline C | seconds (ULMFiT / control / baseline) |',
          '|---|---|---|---|---|---|---|---|']
    for r in rows:
        d = det[r['n_labels']]; s = d['seconds']
        L.append(f'| {r["n_labels"]:,} | {100*r["ulmfit"]:.1f}% | {100*r["control"]:.1f}% | {100*r["baseline"]:.1f}% | '
                 f'{100*(r["ulmfit"]-r["baseline"]):+.1f} | {tuple(d["clas_epochs"])} | {d["baseline_C"]:g} | '
                 f'{s["ulmfit"]:.0f} / {s["control"]:.0f} / {s["baseline"]:.0f} |')
    L += ['', f'Whole sweep: {res.get("total_seconds", 0)/60:.1f} min (stages 1-2 once + {len(rows)} label counts).', '',
          f'![accuracy against labels]({plot.name})', '']
    file.write_text('\n'.join(L))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser()
    ap.add_argument('--labels', default='100,500,1000,2000,8000')
    ap.add_argument('--profile', default='smoke')
    ap.add_argument('--set', nargs='*', default=[], metavar='FIELD=VALUE')
    ap.add_argument('--data-cache', '--corpus-cache', dest='data_cache', default=None)
    ap.add_argument('--out', default='runs/label_sweep')
    ap.add_argument('--encoder', default=None)
    ap.add_argument('--results', default=str(HERE/'RESULTS_label_sweep.md'))
    ap.add_argument('--plot', default=str(HERE/'label_sweep.png'))
    ap.add_argument('--report-only', action='store_true')
    ap.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's; 1 is faster on busy cores)")
    a = ap.parse_args(argv)
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    from ulmfit_lib.profile import get_profile
    from ulmfit_lib.imdb_data import prepare_imdb, save_data_cache, load_data_cache, imdb_texts
    from ulmfit_lib.stages import Run
    from ulmfit_lib.sweep import label_sweep
    out = Path(a.out)
    sampler = LoadSampler(); sampler.start()
    if not a.report_only:
        overrides = {k: json.loads(v) if v[:1] in '[{0123456789-.' else v for k, _, v in (kv.partition('=') for kv in a.set)}
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        p = get_profile(a.profile, device='cpu', **overrides)
        t = time.monotonic()
        if a.data_cache and (Path(a.data_cache)/'meta.json').is_file(): data = load_data_cache(a.data_cache)
        else:
            data = prepare_imdb(p)
            if a.data_cache: save_data_cache(data, a.data_cache)
        texts = imdb_texts(p)
        print(f'data {data.counts()} ({time.monotonic()-t:.0f}s), load {os.getloadavg()[0]:.1f}', flush=True)
        labels = [int(n) for n in a.labels.split(',')]
        log = lambda m: print(f'{time.strftime("%H:%M:%S")} {m} (load {os.getloadavg()[0]:.1f})', flush=True)
        label_sweep(Run(data, p, out, 'cpu', log=log), labels, texts=texts, encoder=a.encoder)
    res = json.loads((out/'label_sweep.json').read_text())
    s = sampler.samples + [os.getloadavg()[0]]
    if a.report_only and (out/'load.json').is_file(): s = json.loads((out/'load.json').read_text())
    else: (out/'load.json').write_text(json.dumps(s))
    load = dict(start=s[0], end=s[-1], min=min(s), max=max(s), mean=sum(s)/len(s))
    if (out/'label_sweep.png').is_file(): shutil.copy(out/'label_sweep.png', a.plot)
    else:
        from ulmfit_lib.sweep import plot_label_sweep
        plot_label_sweep(res['labels'], a.plot, f'IMDb, {res["profile"]} profile (partial): accuracy against labels')
    write_results(res, load, Path(a.results), Path(a.plot), argv)
    print(Path(a.results).read_text())

if __name__ == '__main__': main()
