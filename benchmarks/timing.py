"""How the benchmark and the example time encoder variants (one place for the method)."""
import time


def make_loop(encoder, passes, jit):
    """One tf.function running `passes` encoder passes, each pass's output feeding the next.

    XLA gets a tf.while_loop, which it compiles whole (no per-pass host work). The others get
    the passes unrolled: in an uncompiled tf.while_loop every captured variable handle is a loop
    variable whose Enter/Merge/Switch/NextIteration nodes run on every pass (measured on the H200:
    with the op's 16 handles the GPU idled 120-280 us per pass), which no serving graph pays.
    With passes=1 it is one encoder call per tf.function call: what a serving loop runs.
    """
    import tensorflow as tf

    if jit and passes > 1:
        @tf.function(jit_compile=True)
        def loop(x, lens):
            return tf.while_loop(lambda i, h: i < passes, lambda i, h: (i + 1, encoder(h, lens)),
                                 (tf.constant(0), x), parallel_iterations=1)[1]
    else:
        @tf.function(jit_compile=jit)
        def loop(x, lens):
            h = x
            for _ in range(passes):
                h = encoder(h, lens)
            return h
    return loop


def wait_for(out):
    """Blocks until `out` is computed (and, on a GPU, everything queued before it on the stream) by
    reading one element back: a full read of a large output would add its copy to the time."""
    return out[:1, :1, :1].numpy()


def time_loops(loops, inputs, repeats, calls=1, per_call_units=1):
    """ms per unit of each loop, per repeat; the loops take turns, so drift hits all alike.

    inputs: name -> (hidden, lengths), lengths a list of host int32 tensors: the loops' calls take
    them in turn (one vector repeated, or a new one every call). A repeat makes `calls` calls back
    to back, as a serving loop does (the host enqueues the next call while the device runs the last),
    then waits for the last result; its time is divided by calls * per_call_units (e.g. the passes
    inside one call). Warm-up (tracing, compiling, the first calls) is the caller's.
    """
    times = {name: [] for name in loops}
    position = {name: 0 for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            x, lengths = inputs[name]
            picked = [lengths[(position[name] + i) % len(lengths)] for i in range(calls)]
            position[name] += calls
            start = time.perf_counter()
            for lens in picked:
                out = loop(x, lens)
            wait_for(out)
            times[name].append((time.perf_counter() - start) * 1e3 / (calls * per_call_units))
    return times


def time_variants(encoders, inputs, passes, repeats, compiled=("xla",), outputs=None):
    """ms per pass of each variant, per repeat: `passes` passes in one tf.function per call.

    encoders: name -> fn(hidden, lengths) -> hidden; inputs: name -> (hidden, lengths tensor); the
    variants named in `compiled` run under XLA. If given, `outputs` receives each variant's result
    (numpy) of its warm-up call.
    """
    loops = {}
    for name, encoder in encoders.items():
        loops[name] = make_loop(encoder, passes, jit=(name in compiled))
        out = loops[name](*inputs[name]).numpy()  # trace, compile, warm up
        if outputs is not None:
            outputs[name] = out
    return time_loops(loops, {n: (x, [lens]) for n, (x, lens) in inputs.items()}, repeats,
                      per_call_units=passes)
