// Autograd for the differentiable ops, in C++ so that a call outside of training costs no
// Python (a Python-registered formula runs Python on every call, grad mode or not).
// Backwards are ops of their own (group_norm_silu_backward, ...), so they run on any device.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace adaskip {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

class GroupNormSilu : public torch::autograd::Function<GroupNormSilu> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, int64_t groups, double eps, bool silu) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        int64_t, double, bool)>("adaskip::group_norm_silu");
    ctx->save_for_backward({x, weight, bias});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["silu"] = silu;
    return op.call(x, weight, bias, groups, eps, silu);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
        double, bool)>("adaskip::group_norm_silu_backward");
    const auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_weight, grad_bias] =
        op.call(grads[0], saved[0], saved[1], saved[2],
                ctx->saved_data["groups"].toInt(), ctx->saved_data["eps"].toDouble(),
                ctx->saved_data["silu"].toBool());
    return {grad_x, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class BicubicResize : public torch::autograd::Function<BicubicResize> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t out_h,
                            int64_t out_w) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = find_op<at::Tensor(const at::Tensor&, int64_t, int64_t)>(
        "adaskip::bicubic_resize");
    // The op checks x first: a bad x raises its ValueError, not an IndexError here.
    at::Tensor y = op.call(x, out_h, out_w);
    ctx->saved_data["in_h"] = x.size(2);
    ctx->saved_data["in_w"] = x.size(3);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = find_op<at::Tensor(const at::Tensor&, int64_t, int64_t)>(
        "adaskip::bicubic_resize_backward");
    return {op.call(grads[0], ctx->saved_data["in_h"].toInt(), ctx->saved_data["in_w"].toInt()),
            at::Tensor(), at::Tensor()};
  }
};

class BicubicBridge : public torch::autograd::Function<BicubicBridge> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t out_h,
                            int64_t out_w, const at::Tensor& proj_weight,
                            const at::Tensor& proj_bias) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = find_op<at::Tensor(const at::Tensor&, int64_t, int64_t, const at::Tensor&,
                                        const at::Tensor&)>("adaskip::bicubic_bridge");
    ctx->save_for_backward({x, proj_weight});
    return op.call(x, out_h, out_w, proj_weight, proj_bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&)>(
        "adaskip::bicubic_bridge_backward");
    const auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_weight, grad_bias] = op.call(grads[0], saved[0], saved[1]);
    return {grad_x, at::Tensor(), at::Tensor(), grad_weight, grad_bias};
  }
};

at::Tensor group_norm_silu_autograd(const at::Tensor& x, const at::Tensor& weight,
                                    const at::Tensor& bias, int64_t groups, double eps,
                                    bool silu) {
  return GroupNormSilu::apply(x, weight, bias, groups, eps, silu);
}

at::Tensor bicubic_resize_autograd(const at::Tensor& x, int64_t out_h, int64_t out_w) {
  return BicubicResize::apply(x, out_h, out_w);
}

at::Tensor bicubic_bridge_autograd(const at::Tensor& x, int64_t out_h, int64_t out_w,
                                   const at::Tensor& proj_weight, const at::Tensor& proj_bias) {
  return BicubicBridge::apply(x, out_h, out_w, proj_weight, proj_bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(adaskip, Autograd, m) {
  m.impl("group_norm_silu", &group_norm_silu_autograd);
  m.impl("bicubic_resize", &bicubic_resize_autograd);
  m.impl("bicubic_bridge", &bicubic_bridge_autograd);
}

}  // namespace adaskip
