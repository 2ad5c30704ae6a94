// Errors: user errors throw std::invalid_argument (→ ValueError) or std::out_of_range (→ IndexError);
// broken internal invariants throw std::logic_error (→ RuntimeError). Nothing aborts the interpreter.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

#define PYHESSK_CHECK(cond, msg)                                  \
  do {                                                            \
    if (!(cond)) {                                                \
      std::ostringstream pyhessk_os_;                             \
      pyhessk_os_ << msg;                                         \
      throw std::invalid_argument(pyhessk_os_.str());             \
    }                                                             \
  } while (0)

#define PYHESSK_CHECK_INDEX(cond, msg)                            \
  do {                                                            \
    if (!(cond)) {                                                \
      std::ostringstream pyhessk_os_;                             \
      pyhessk_os_ << msg;                                         \
      throw std::out_of_range(pyhessk_os_.str());                 \
    }                                                             \
  } while (0)

#define PYHESSK_ASSERT(cond)                                                              \
  do {                                                                                    \
    if (!(cond))                                                                          \
      throw std::logic_error(std::string("pyhessk internal error: ") + #cond + " at " + \
                             __FILE__ + ":" + std::to_string(__LINE__));                  \
  } while (0)
