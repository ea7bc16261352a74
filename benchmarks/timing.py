"""How the benchmark and the example time encoder variants (one place for the method)."""
import time


def make_loop(encoder, passes, jit):
    """One tf.function running `passes` encoder passes, each pass's output feeding the next.

    XLA gets a tf.while_loop, which it compiles whole (no per-pass host work). The others get
    the passes unrolled: in an uncompiled tf.while_loop every captured variable handle is a loop
    variable whose Enter/Merge/Switch/NextIteration nodes run on every pass (measured on the H200:
    with the op's 16 handles the GPU idled 120-280 us per pass), which no serving graph pays.
    """
    import tensorflow as tf

    if jit:
        @tf.function(jit_compile=True)
        def loop(x, lens):
            return tf.while_loop(lambda i, h: i < passes, lambda i, h: (i + 1, encoder(h, lens)),
                                 (tf.constant(0), x), parallel_iterations=1)[1]
    else:
        @tf.function
        def loop(x, lens):
            h = x
            for _ in range(passes):
                h = encoder(h, lens)
            return h
    return loop


def time_variants(encoders, inputs, passes, repeats, compiled=("xla",), outputs=None):
    """ms per pass of each variant, per repeat; the variants take turns, so drift hits all alike.

    encoders: name -> fn(hidden, lengths) -> hidden; inputs: name -> (hidden, lengths); the
    variants named in `compiled` run under XLA. If given, `outputs` receives each variant's result
    (numpy) of its warm-up call.
    """
    loops = {}
    for name, encoder in encoders.items():
        loops[name] = make_loop(encoder, passes, jit=(name in compiled))
        out = loops[name](*inputs[name]).numpy()  # trace, compile, warm up
        if outputs is not None:
            outputs[name] = out
    times = {name: [] for name in encoders}
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop(*inputs[name]).numpy()
            times[name].append((time.perf_counter() - start) * 1e3 / passes)
    return times
