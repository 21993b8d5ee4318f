// Schemas of every adaskip op. Kernels register per device in cpu/, cuda/ and the composites;
// fake kernels and autograd are registered from Python (adaskip_ext/ops/native.py).
#include <Python.h>
#include <torch/library.h>

#include "cpu/vec_math.h"  // cpu_isa()

extern "C" {
static PyObject* cpu_isa(PyObject* /*module*/, PyObject* /*unused*/) {
  return PyUnicode_FromString(adaskip::cpu_isa());
}

// `import adaskip_ext._C` loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static PyMethodDef methods[] = {
      {"cpu_isa", cpu_isa, METH_NOARGS, "Which clone of the CPU kernels this CPU runs."},
      {nullptr, nullptr, 0, nullptr}};
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(adaskip, m) {
  // y = silu(group_norm(x)) (or the GroupNorm alone); x: (N, C, H, W) NCHW or channels_last.
  m.def("group_norm_silu(Tensor x, Tensor weight, Tensor bias, int groups, float eps, bool silu)"
        " -> Tensor");
  // (grad_x, grad_weight, grad_bias); statistics are recomputed from x.
  m.def("group_norm_silu_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor bias,"
        " int groups, float eps, bool silu) -> (Tensor, Tensor, Tensor)");
  // conv3x3(silu(group_norm(x))) + conv_bias + add[:, :, None, None] + residual; inference only.
  m.def("group_norm_silu_conv3x3(Tensor x, Tensor gn_weight, Tensor gn_bias, Tensor conv_weight,"
        " Tensor conv_bias, int groups, float eps, Tensor? add, Tensor? residual) -> Tensor");
  // F.interpolate(x, (out_h, out_w), mode="bicubic", align_corners=False).
  m.def("bicubic_resize(Tensor x, int out_h, int out_w) -> Tensor");
  // The adjoint of bicubic_resize: grad_out (N, C, out_h, out_w) -> (N, C, in_h, in_w).
  m.def("bicubic_resize_backward(Tensor grad_out, int in_h, int in_w) -> Tensor");
  // conv1x1(bicubic_resize(x)), the 1x1 projection applied at the smaller resolution.
  m.def("bicubic_bridge(Tensor x, int out_h, int out_w, Tensor proj_weight, Tensor proj_bias)"
        " -> Tensor");
  // (grad_x, grad_proj_weight, grad_proj_bias).
  m.def("bicubic_bridge_backward(Tensor grad_out, Tensor x, Tensor proj_weight)"
        " -> (Tensor, Tensor, Tensor)");
}
