"""CUDA graphs of a population's training pass (forward, loss and gradients), replayed step after step.

A BiLSTM population's step on the GPU is a time loop of small batched matmuls and element-wise gate kernels over
all members, forward and backward: thousands of kernel launches, each a few microseconds of work, issued by
Python and the autograd engine. Captured once as a CUDA graph, a step is one replay: the launches and the Python
time go, the arithmetic is the same kernels on the same values.

`GraphedPass()(function, *args)` calls `function(*args)` (tensors, or dicts of tensors, in and out) through a graph
per distinct set of argument shapes and dtypes, captured at its first call after warm-up calls on a side stream
(one GraphedPass per function: the graphs are keyed by the shapes only, and the function is not kept, so that a
population's graphs and their memory go with it, with no reference cycle to wait for the garbage collector);
the `MAX_GRAPHS` most recently used graphs are kept (each holds its own activation memory). Before a replay the
arguments are copied into the graph's static tensors, so callers pass any tensors of those shapes. The outputs
are the graph's own tensors: the next replay overwrites them. On the CPU `function` is called directly.
The captured function must not synchronise with the host (no .item(), no data-dependent shapes).
GraphedSteps replays a whole training step instead (the DNN population's, optimizer included), whose weights and
optimizer state are updated in place and so need no copying.
"""
from collections import OrderedDict

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

MAX_GRAPHS = 4
WARMUP_CALLS = 3


class GraphedPass:
    def __init__(self):
        self.graphs: OrderedDict = OrderedDict()

    def __call__(self, function, *args):
        flat, spec = tree_flatten(args)
        if not flat[0].is_cuda:
            return function(*args)
        key = (str(spec), *((t.shape, t.dtype, t.device) for t in flat))
        entry = self.graphs.pop(key, None) or self._capture(function, args)
        while len(self.graphs) >= MAX_GRAPHS:
            self.graphs.popitem(last=False)
        self.graphs[key] = entry
        graph, static, outputs = entry
        for mine, given in zip(static, flat):
            mine.copy_(given)
        graph.replay()
        return outputs

    @staticmethod
    def _capture(function, args):
        flat, spec = tree_flatten(args)
        static = [t.detach().clone() for t in flat]
        static_args = tree_unflatten(static, spec)
        side = torch.cuda.Stream(static[0].device)
        side.wait_stream(torch.cuda.current_stream(static[0].device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                function(*static_args)
        torch.cuda.current_stream(static[0].device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = function(*static_args)
        return graph, static, outputs


class GraphedSteps:
    """`step(batch)` (a training step that reads its mini-batch through the (members, batch) sample indices
    `batch` and updates tensors in place) replayed as a CUDA graph: the first call runs eagerly on a side stream
    (a real step, which also compiles and warms up its kernels), the second is captured and replayed, later calls
    of that shape copy their indices in and replay. Every tensor the step updates must stay the same object
    between calls (a group's weights and optimizer state in sgd.train_epochs). Other shapes (an epoch's last,
    smaller batch) and CPU tensors run eagerly."""

    def __init__(self, step):
        self.step = step
        self.graph = self.indices = None
        self.warm = False

    def __call__(self, batch: torch.Tensor) -> None:
        if not batch.is_cuda or (self.indices is not None and batch.shape != self.indices.shape):
            self.step(batch)
            return
        if not self.warm:
            side = torch.cuda.Stream(batch.device)
            side.wait_stream(torch.cuda.current_stream(batch.device))
            with torch.cuda.stream(side):
                self.step(batch)
            torch.cuda.current_stream(batch.device).wait_stream(side)
            self.warm = True
            return
        if self.graph is None:
            self.indices = batch.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.step(self.indices)
        self.indices.copy_(batch)
        self.graph.replay()
