// Runtime → compile-time switches, the one place kernels are specialised on activation and loss.
#pragma once
#include "activations.h"
#include "check.h"
#include "losses.h"

#define PYHESSK_ACT_CASE(NAME, kAct, ...) \
  case pyhessk::Act::NAME: {              \
    constexpr pyhessk::Act kAct = pyhessk::Act::NAME; \
    __VA_ARGS__();                        \
    break;                                \
  }

// PYHESSK_DISPATCH_ACT(act, kAct, [&] { body using kAct });
#define PYHESSK_DISPATCH_ACT(act, kAct, ...)                          \
  switch (static_cast<pyhessk::Act>(act)) {                           \
    PYHESSK_ACT_CASE(identity, kAct, __VA_ARGS__)                     \
    PYHESSK_ACT_CASE(tanh, kAct, __VA_ARGS__)                         \
    PYHESSK_ACT_CASE(sigmoid, kAct, __VA_ARGS__)                      \
    PYHESSK_ACT_CASE(relu, kAct, __VA_ARGS__)                         \
    PYHESSK_ACT_CASE(leaky_relu, kAct, __VA_ARGS__)                   \
    PYHESSK_ACT_CASE(softplus, kAct, __VA_ARGS__)                     \
    PYHESSK_ACT_CASE(gelu, kAct, __VA_ARGS__)                         \
    PYHESSK_ACT_CASE(silu, kAct, __VA_ARGS__)                         \
    PYHESSK_ACT_CASE(sin, kAct, __VA_ARGS__)                          \
    default:                                                          \
      PYHESSK_CHECK(false, "unknown activation id " << int(act));     \
  }

#define PYHESSK_LOSS_CASE(NAME, kLoss, ...) \
  case pyhessk::Loss::NAME: {               \
    constexpr pyhessk::Loss kLoss = pyhessk::Loss::NAME; \
    __VA_ARGS__();                          \
    break;                                  \
  }

#define PYHESSK_DISPATCH_LOSS(loss, kLoss, ...)                     \
  switch (static_cast<pyhessk::Loss>(loss)) {                       \
    PYHESSK_LOSS_CASE(mse, kLoss, __VA_ARGS__)                      \
    PYHESSK_LOSS_CASE(softmax_cross_entropy, kLoss, __VA_ARGS__)    \
    PYHESSK_LOSS_CASE(sigmoid_cross_entropy, kLoss, __VA_ARGS__)    \
    default:                                                        \
      PYHESSK_CHECK(false, "unknown loss id " << int(loss));        \
  }
