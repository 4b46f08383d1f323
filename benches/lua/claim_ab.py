"""Redis CPU per claimed fire of two or more versions of claim.lua, A/B.

Starts a private redis-server on a free loopback port, sets up 64 shards
with 10 jobs each (leases held, versions stored in both layouts), then for
each script given runs 1,500 calls of 16 shard batches of 10 fires (one
fire per job, every fire a real claim), alternating the scripts round by
round, and prints the Redis CPU (INFO cpu, user + sys) per fire of each
round. A script whose path contains "old" is called with the layout
before the job-state hash (6 keys per batch: lease, watermarks, versions,
trigger queue, open fires, trigger instants), any other with 4 keys.

    pip install redis
    git show 07292da:crates/shardcron-coord/src/lua/claim.lua > old.lua
    python3 benches/lua/claim_ab.py old.lua,crates/shardcron-coord/src/lua/claim.lua 4
"""
import redis, sys, subprocess, time, tempfile, os, socket
def free_port():
    s=socket.socket(); s.bind(('127.0.0.1',0)); p=s.getsockname()[1]; s.close(); return p
port=free_port(); d=tempfile.mkdtemp()
srv=subprocess.Popen(['redis-server','--port',str(port),'--bind','127.0.0.1','--save','','--appendonly','no','--dir',d],stdout=subprocess.DEVNULL)
time.sleep(0.5)
r=redis.Redis(port=port)
SH=64; JOBS=10; HOLDER='h/1'; TOK='5'
for s in range(SH):
    r.set(f'{{b:{s}}}:lease', f'{HOLDER}|{TOK}', px=10**9)
    r.hset(f'{{b:{s}}}:last', mapping={f'j{s}-{j}|v':'1' for j in range(JOBS)})
    r.hset(f'{{b:{s}}}:jobver', mapping={f'j{s}-{j}':'1' for j in range(JOBS)})
def cpu():
    i=r.info('cpu'); return i['used_cpu_user']+i['used_cpu_sys']
def run(path, calls, variant_args):
    src=open(path).read(); sha=r.script_load(src)
    at=1_700_000_000_000 + int(time.time()*1000)%10**9*0  # constant base
    global T
    fires=0; c0=cpu()
    for c in range(calls):
        keys=[];args=['900000']
        for b in range(16):
            s=(c*16+b)%SH
            keys += variant_args['keys'](s)
            args += [f'{HOLDER}|{TOK}', f'{{b:{s}}}:fire:', '100000000000000', str(JOBS)]
            for j in range(JOBS):
                T[s]+=1
                args += [f'j{s}-{j}', str(T[s]), 's', '1', str(T[s]), '', '']
                fires+=1
        out=r.evalsha(sha, len(keys), *keys, *args)
        if c==0:
            assert all(x==1 for x in out), out[:20]
    return (cpu()-c0)/fires*1e6
T=[1_700_000_000_000]*SH
keys4=lambda s:[f'{{b:{s}}}:lease',f'{{b:{s}}}:last',f'{{b:{s}}}:triggers',f'{{b:{s}}}:open']
keys6=lambda s:[f'{{b:{s}}}:lease',f'{{b:{s}}}:wm',f'{{b:{s}}}:jobver',f'{{b:{s}}}:triggers',f'{{b:{s}}}:open',f'{{b:{s}}}:trigger_at']
res={}
for rep in range(int(sys.argv[2]) if len(sys.argv)>2 else 3):
    for path in sys.argv[1].split(','):
        res.setdefault(path,[]).append(run(path, 1500, {'keys':keys6 if 'old' in path else keys4}))
for p,v in res.items(): print(p, ' '.join(f'{x:.2f}' for x in v), 'us/fire redis CPU')
srv.terminate()
