"""The checks of `fit`'s arguments, made before anything changes."""

from __future__ import annotations

from .callbacks import Callback, LRSchedulerCallback


def checked_callbacks(callbacks) -> list:
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, Callback):
            msg = f"callbacks must be Callback instances, got {type(cb).__name__}"
            raise TypeError(msg)
    return callbacks


def check_verbose(verbose) -> None:
    if verbose not in ("auto", 0, 1, 2) or isinstance(verbose, bool):
        msg = f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}"
        raise ValueError(msg)


def schedule_callback(lr_schedule, optimizer, callbacks):
    """The callback stepping the learning-rate schedule of this run: the one
    given, else the one made for the optimizer, unless a callback already
    steps it."""
    from ..optim.schedules import FunctionLR, LRScheduler

    stepped = {id(cb.scheduler) for cb in callbacks
               if isinstance(cb, LRSchedulerCallback)}
    if lr_schedule is not None:
        if isinstance(lr_schedule, LRScheduler):
            if lr_schedule.optimizer is not optimizer:
                msg = ("lr_schedule was made for another optimizer; make it for "
                       "the one fit uses (model.optimizer)")
                raise ValueError(msg)
            schedule = lr_schedule
        elif callable(lr_schedule):
            schedule = FunctionLR(optimizer, lr_schedule)
        else:
            msg = (f"lr_schedule must be an LRScheduler or a function of the "
                   f"epoch, got {type(lr_schedule).__name__}")
            raise TypeError(msg)
    else:
        schedule = optimizer.scheduler
    if schedule is None or id(schedule) in stepped:
        return None
    return LRSchedulerCallback(schedule)


def steps_argument(name, value):
    """None, or batches per epoch of an iterable: a positive int."""
    if value is None:
        return None
    try:
        return positive_int(name, value)
    except ValueError:
        msg = (f"{name} must be a positive int (batches taken from an iterable "
               f"each epoch) or None (all of it), got {value!r}")
        raise ValueError(msg) from None


def positive_int(name, value) -> int:
    """`value` as an int if it is a positive integral number (numpy ints too)."""
    import operator

    if isinstance(value, bool):
        value = None
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        msg = f"{name} must be a positive int, got {value!r}"
        raise ValueError(msg)
    return number
