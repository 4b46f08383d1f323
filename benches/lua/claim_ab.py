"""Redis CPU per claimed fire of versions of claim.lua, A/B.

Starts a private redis-server on a free loopback port, sets up 1,024 shards
with 10 jobs each (leases held, versions stored in the job-state hash),
then for each script given runs calls of 200 shard batches of 10 fires
(one fire per job, every fire a real claim), alternating the scripts
round by round, and prints the Redis CPU (INFO cpu, user + sys) per fire
of each round. Each script is given as path:form, where form is the
arguments per fire: 4 or 7 for the layout with per-fire versions (a batch
says which), 0 for the layout before that (always 7, no per-batch field),
2 for a batch that gives the shard version its job versions were loaded
at and one attempt id (job id and instant per fire; the shard's version
is unchanged, so no job version is read), 8 for the same batch after
another job of the shard was written (every job version is read and
compared with the loaded one), 3 for the batch of 2 decided on its claim
mark (each shard's batch expects the mark its previous batch wrote; the
first round of a shard has none). Forms 2, 3 and 8 use the layout with
claim marks and runs of one instant (docs/ARCHITECTURE.md, "Claim marks").

    pip install redis
    git show d1e858d:crates/shardcron-coord/src/lua/claim.lua > old.lua
    python3 benches/lua/claim_ab.py old.lua:0,crates/shardcron-coord/src/lua/claim.lua:4 4
    python3 benches/lua/claim_ab.py crates/shardcron-coord/src/lua/claim.lua:4,crates/shardcron-coord/src/lua/claim.lua:2 4
    JOBS=2 python3 benches/lua/claim_ab.py ...   # fires per batch (default 10)
    IR=1 python3 benches/lua/claim_ab.py ...     # instructions, not CPU time

CPU time moves by +-10 % between identical rounds on a shared host. With
IR=1 the server runs under valgrind's callgrind and each round reports the
thousands of instructions the server executed per fire (the counters are
zeroed before a round and dumped after it), which repeat to within 0.1 %
from round to round; rounds are 10 calls instead of 150 (valgrind is about
50 times slower). The first round of each script starts from empty
watermarks and is cheaper: compare the later rounds.
"""
import glob, os, redis, sys, subprocess, time, tempfile, socket


def free_port():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p


port = free_port(); d = tempfile.mkdtemp()
IR = os.environ.get('IR') == '1'
wrap = ['valgrind', '--tool=callgrind', f'--callgrind-out-file={d}/cg.out'] if IR else []
srv = subprocess.Popen(wrap + ['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '',
                               '--appendonly', 'no', '--dir', d],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(5 if IR else 0.5)
r = redis.Redis(port=port)
SH = 1024; JOBS = int(os.environ.get('JOBS', '10')); HOLDER = 'w0/5f3a9c1e'; TOK = '1796517963982196'
for s in range(SH):
    r.set(f'{{sc:{s}}}:lease', f'{HOLDER}|{TOK}', px=10**9)
    r.set(f'{{sc:{s}}}:ver', '5')
    r.hset(f'{{sc:{s}}}:last', mapping={f'job-{s*JOBS+j:05d}|v': '1' for j in range(JOBS)})


def cpu():
    i = r.info('cpu'); return i['used_cpu_user'] + i['used_cpu_sys']


def instructions():
    """Instructions the server executed since the counters were last zeroed
    (and zeroes them): callgrind dumps its counters to a new file."""
    before = set(glob.glob(f'{d}/cg.out*'))
    subprocess.run(['callgrind_control', '-d', str(srv.pid)], capture_output=True, check=True)
    total = 0
    for path in set(glob.glob(f'{d}/cg.out*')) - before:
        for line in open(path):
            if line.startswith(('summary:', 'totals:')):
                total = max(total, int(line.split()[1]))
    return total


T = [1_700_000_000_000] * SH
att = [0]
MARK = [''] * SH


PRELUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       '../../crates/shardcron-coord/src/lua/read_strings.lua')


def source(path):
    """The script as the coordinator loads it: a claim.lua that reads its
    leases through read_strings gets that prelude in front (scripts.rs)."""
    text = open(path).read()
    if 'read_strings(' in text and 'local function read_strings' not in text:
        text = open(PRELUDE).read() + text
    return text


def run(path, calls, form):
    sha = r.script_load(source(path))
    fires = 0
    if IR:
        instructions()
    else:
        c0 = cpu()
    for c in range(calls):
        keys = []; args = ['900000']
        for b in range(200):
            s = (c * 200 + b) % SH
            keys += [f'{{sc:{s}}}:lease', f'{{sc:{s}}}:last', f'{{sc:{s}}}:triggers', f'{{sc:{s}}}:open']
            args += [f'{HOLDER}|{TOK}', f'{{sc:{s}}}:fire:', '100000000000000', str(JOBS)]
            T[s] += 1000
            if form in (2, 3, 8):
                # The shard is at version 5; loaded at 5 (unchanged) or 4.
                keys.append(f'{{sc:{s}}}:ver')
                att[0] += 1
                mark = f'm{att[0]}'
                expected = MARK[s] if form == 3 else ''
                MARK[s] = mark
                args += ['2', '4' if form == 8 else '5', str(att[0]), expected, mark,
                         '1', str(T[s]), str(JOBS)]
                args += [f'job-{s*JOBS+j:05d}' for j in range(JOBS)]
                fires += JOBS
                continue
            if form:
                args.append(str(form))
            for j in range(JOBS):
                att[0] += 1
                job = f'job-{s*JOBS+j:05d}'
                if form == 4:
                    args += [job, str(T[s]), '1', str(att[0])]
                elif form == 7:
                    args += [job, str(T[s]), '1', str(att[0]), 's', '', '']
                else:
                    args += [job, str(T[s]), 's', '1', str(att[0]), '', '']
                fires += 1
        out = r.evalsha(sha, len(keys), *keys, *args)
        # Per batch a status (1, 2 or 3: see claim.lua), then one code per fire.
        per = JOBS + 1
        assert all(out[i] in (1, 2, 3) for i in range(0, len(out), per)), (path, out[:30])
        assert all(x == 1 for i, x in enumerate(out) if i % per), (path, out[:30])
    if IR:
        return instructions() / fires / 1000
    return (cpu() - c0) / fires * 1e6


res = {}
spec = [x.rsplit(':', 1) for x in sys.argv[1].split(',')]
for rep in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
    for path, form in spec:
        res.setdefault(f'{path}:{form}', []).append(run(path, 10 if IR else 150, int(form)))
for p, v in res.items():
    print(p, ' '.join(f'{x:.2f}' for x in v), 'k instructions/fire' if IR else 'us/fire redis CPU')
srv.terminate()
