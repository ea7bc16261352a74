// All op registrations of libfastbert_ops.so. Kernels live in *_op.cc.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace fastbert {
namespace {

using ::tensorflow::Status;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

Status EncoderShape(InferenceContext* c) {
  ShapeHandle hidden, seq_len;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &hidden));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &seq_len));
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(hidden, 0), c->Dim(seq_len, 0), &batch));
  int head_num, size_per_head;
  TF_RETURN_IF_ERROR(c->GetAttr("head_num", &head_num));
  TF_RETURN_IF_ERROR(c->GetAttr("size_per_head", &size_per_head));
  DimensionHandle h;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(hidden, 2), int64_t{head_num} * size_per_head, &h));
  c->set_output(0, c->MakeShape({batch, c->Dim(hidden, 1), h}));
  return Status();
}

}  // namespace

// The per-layer weights come as lists (one tensor per layer, Google BERT's variables as they are),
// so a model's variables feed the op without being stacked or copied on every call. They may be
// tensors or resource variables (Tw = Tv = resource): the op then reads the variables itself,
// which saves a ReadVariableOp per weight per call (192 for BERT-base). Each list holds either
// num_layer per-layer tensors, or one tensor with the layers stacked ([num_layer, ...]).
REGISTER_OP("FastBertEncoder")
    .Input("hidden_states: T")
    .Input("sequence_length: int32")
// One input list per entry of layer_weights.def: "<name>: num_weights * Tw" (kernels) or "* Tv".
#define FB_WEIGHT_TYPE_kKernel "Tw"
#define FB_WEIGHT_TYPE_kVector "Tv"
#define FB_WEIGHT(field, name, kind, rows, cols) .Input(name ": num_weights * " FB_WEIGHT_TYPE_##kind)
#include "tf_ops/common/layer_weights.def"
#undef FB_WEIGHT
    .Input("quant_scales: num_quant * Tq")
    .Output("output: T")
    .Attr("T: {float, half, bfloat16}")
    .Attr("Tw: {float, half, bfloat16, int8, resource}")
    .Attr("Tv: {float, half, bfloat16, resource}")
    .Attr("Tq: {float, resource} = DT_FLOAT")
    .Attr("num_layer: int >= 1")
    .Attr("num_weights: int >= 1")
    .Attr("num_quant: int >= 0 = 0")
    .Attr("head_num: int >= 1")
    .Attr("size_per_head: int >= 1")
    .Attr("inter_size: int >= 1")
    .Attr("remove_padding: bool = false")
    .Attr("activation: {'gelu_tanh', 'gelu'} = 'gelu_tanh'")
    .Attr("layer_norm_eps: float = 1e-12")
    .Attr("q_scaling: float = 1.0")
    .Attr("int8_mode: int = 0")
    .SetShapeFn(EncoderShape)
    .Doc(R"doc(
The BERT encoder stack (post-LayerNorm, as Google BERT) in one op.

hidden_states: [B, S, H], H = head_num * size_per_head.
sequence_length: [B]; tokens [0, len) of each sequence are real, the rest padding.
  Rows at or past a sequence's length are zeros in the output, in every mode.
*_kernel: [in, out] per layer (Google BERT's layout); int8 with per-layer quant_scales
  when int8_mode is 1 or 2 (see the README for the layout of quant_scales). Tensors, or
  handles of resource variables holding them.
remove_padding: run the layers on the packed real tokens only.
activation: 'gelu_tanh' (Google BERT's tanh approximation) or 'gelu' (the erf form).
q_scaling: attention scores are scaled by 1 / (sqrt(size_per_head) * q_scaling).
)doc");

REGISTER_OP("RemovePadding")
    .Input("hidden_states: T")
    .Input("sequence_length: int32")
    .Output("packed: T")
    .Output("cu_seqlens: int32")
    .Attr("T: {float, half, bfloat16, double, int32, int8}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle hidden, seq_len;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &hidden));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &seq_len));
      DimensionHandle batch, batch_plus_one;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(hidden, 0), c->Dim(seq_len, 0), &batch));
      TF_RETURN_IF_ERROR(c->Add(batch, 1, &batch_plus_one));
      c->set_output(0, c->MakeShape({c->UnknownDim(), c->Dim(hidden, 2)}));
      c->set_output(1, c->Vector(batch_plus_one));
      return Status();
    })
    .Doc(R"doc(
Packs the real tokens of a padded batch: packed [T, H] with T = sum(sequence_length), and
cu_seqlens [B + 1], the offset of each sequence in packed (cu_seqlens[B] = T).
)doc");

REGISTER_OP("RebuildPadding")
    .Input("packed: T")
    .Input("cu_seqlens: int32")
    .Input("max_seq_len: int32")
    .Output("hidden_states: T")
    .Attr("T: {float, half, bfloat16, double, int32, int8}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle packed, cu, max_len;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &packed));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &cu));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &max_len));
      DimensionHandle batch;
      TF_RETURN_IF_ERROR(c->Subtract(c->Dim(cu, 0), 1, &batch));
      DimensionHandle seq;
      TF_RETURN_IF_ERROR(c->MakeDimForScalarInput(2, &seq));
      c->set_output(0, c->MakeShape({batch, seq, c->Dim(packed, 1)}));
      return Status();
    })
    .Doc(R"doc(
Inverse of RemovePadding: scatters packed [T, H] back to [B, max_seq_len, H] (B = len(cu_seqlens) - 1),
with zeros in the padding.
)doc");

}  // namespace fastbert
