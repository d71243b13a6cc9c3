"""A run's training batches as passes over the training set, each a pure function of where it is.

Pass ``p`` is shuffled with the seed ``(seed, p)`` and each batch is augmented with Keras' seed
counters set from the batch's index, so epoch k of a run resumed in a new process sees the
batches an uninterrupted run's epoch k saw (``tf.data``'s ``reshuffle_each_iteration`` and the
augmentation layers' running counters would depend on how many epochs this process ran).
"""

from __future__ import annotations

PASS_SEEDS = 1_000_003  # pass p of seed s shuffles with seed s * PASS_SEEDS + p
DRAWS_PER_BATCH = 1 << 16  # an augmentation layer's seed counter starts each batch this far apart


def passes(images, size: int, buffer: int, batch_size: int, seed: int, span, skip: int, augment):
    """Passes ``span = (first, end)`` over ``images``, pass p shuffled by ``(seed, p)``, augmentation
    seeded by ``(seed, batch index)``: a pure function of where the batch is in the run."""
    import tensorflow as tf

    first, end = span

    def one_pass(number):
        # the pass's seed is a tensor here, and TF's Python check of a global seed of 0 against it
        # fails in a graph: the order comes from the pass's seed alone, whatever the global seed
        graph = tf.compat.v1.get_default_graph()
        graph.seed, outer = None, graph.seed
        try:
            order = images.shuffle(buffer, seed=seed * PASS_SEEDS + number, reshuffle_each_iteration=False)
        finally:
            graph.seed = outer
        return order.batch(batch_size)

    # made lazily, one pass at a time: a chain of one dataset per pass took minutes to build for
    # long runs (``trainer.epochs=100000``) before the first batch
    train = tf.data.Dataset.range(first, end).flat_map(one_pass).skip(skip)
    # images may come as uint8 (decoded files): float32 0-255 from the batch on
    train = train.map(as_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is None:
        return train
    start = first * -(-size // batch_size) + skip  # batches before this one
    layers = [layer for layer in augment.layers if hasattr(layer, "generator")]

    def augment_batch(index, batch):
        x, y = batch
        # each layer's Keras seed counter set from the batch's index: the draws depend on it alone
        # (tf.data orders the stateful assign before the layers' reads of the same variable)
        for layer in layers:
            state = tf.stack([tf.constant(layer.seed, tf.int64), index * DRAWS_PER_BATCH])
            layer.generator.state.assign(tf.cast(state, layer.generator.state.dtype))
        return augment(x, training=True), y

    # sequential: a parallel map would interleave the counters' resets and draws
    return train.enumerate(start=start).map(augment_batch)


def as_float(images, labels):
    """A batch's images as float32 0-255 pixels, what every model here takes (decoded files stay
    uint8 until batched: a whole-set shuffle buffer of float32 images held 4 times the set)."""
    import tensorflow as tf

    return tf.cast(images, tf.float32), labels
