"""
Backends, devices, precision and compiled steps
===============================================

portnn's layers are written once against the Python array API standard;
a *backend* decides which library runs them: NumPy, CuPy on an NVIDIA
GPU, PyTorch tensors, JAX, or array-api-strict (the standard and nothing
else). This tutorial trains the same script on each backend this machine
has, shows the device discipline that keeps GPU code honest without a GPU,
mixed precision, and the compiled step.
"""

# %%
# What is usable here
# -------------------
import time

from sklearn.datasets import load_digits

import portnn

for status in portnn.backends.status():
    print(f"{status.name:26s} {'usable' if status.usable else 'no'}: "
          f"{status.reason[:60]}")

# %%
# One script, every backend
# -------------------------
# ``use_backend`` selects the library for a block; data given to ``fit`` is
# moved to the model's device once. One seed gives the same initial
# weights on every backend, so the runs agree up to floating-point
# rounding.
digits = load_digits()
x = (digits.data / 16.0).astype("float32")
y = digits.target


def train(precision="float32", jit_compile=False, epochs=5):
    portnn.seed(0)
    model = portnn.Sequential(portnn.Dense(64, 128), portnn.ReLU(),
                              portnn.Dense(128, 10))
    model.compile(loss="cross_entropy", optimizer="adam",
                  jit_compile=jit_compile)
    start = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
                        precision=precision)
    return model, history, time.perf_counter() - start


first_weights = {}
for name in portnn.backends.available():
    with portnn.use_backend(name):
        model, history, seconds = train()
        first_weights[name] = model[0].W.value
        print(f"{name:26s} loss {history['loss'][-1]:.5f}  "
              f"accuracy {history['accuracy'][-1]:.3f}  {seconds:5.2f} s")

# %%
# Device discipline, without a GPU
# --------------------------------
# On a GPU, an array on the host meeting one on the device is either an
# error or a hidden copy. ``array_api_strict:device1`` behaves like a second
# device: its arrays refuse to meet the CPU's. portnn's whole test suite
# runs there, so code that passes it does not copy by accident on a GPU.
with portnn.use_backend("array_api_strict:device1"):
    backend = portnn.get_backend()
    on_device = backend.asarray([1.0, 2.0])
    host = portnn.backends.get("array_api_strict").asarray([1.0, 2.0])
    try:
        on_device + host
    except ValueError as err:
        print("refused:", str(err)[:70])
    print("to the host, on purpose:", backend.to_numpy(on_device))

# %%
# Mixed precision
# ---------------
# ``precision="mixed_bfloat16"`` (or ``"mixed_float16"``, with loss scaling)
# computes the layers in a half type from float32 master weights; losses,
# softmaxes and optimizer state stay in float32. On a CPU it is mainly a
# way to check the numerics; on a GPU it halves memory traffic.
half = "mixed_bfloat16" if "torch" in portnn.backends.available() else "mixed_float16"
with portnn.use_backend("torch" if half == "mixed_bfloat16" else "numpy"):
    model, history, seconds = train(precision=half)
    print(f"{half}: loss {history['loss'][-1]:.4f}, "
          f"weights stay {portnn.backends.backend_of(model[0].W.value).name} "
          f"{model[0].W.value.dtype}")

# %%
# The compiled step
# -----------------
# ``jit_compile=True`` hands the whole hand-written step (forward, loss,
# backward, optimizer update) to the backend's compiler: ``jax.jit`` on JAX,
# ``torch.compile`` on torch. The first step compiles; every later step is
# one program with no Python in between. The timing below runs one epoch
# (which compiles), then five more on the same model.
for name in ("jax", "torch"):
    if name not in portnn.backends.available():
        print(f"{name} is not installed here")
        continue
    with portnn.use_backend(name):
        for jit_compile in (False, True):
            model, history, first = train(jit_compile=jit_compile, epochs=1)
            start = time.perf_counter()
            history = model.fit(x, y, epochs=5, batch_size=64, verbose=0)
            later = time.perf_counter() - start
            print(f"{name:5s} {'compiled' if jit_compile else 'eager':8s} "
                  f"first epoch {first:5.2f} s, next five {later:5.2f} s, "
                  f"loss {history['loss'][-1]:.6f}")
