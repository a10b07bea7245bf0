// Asio (with its SSL layer) and Beast are compiled once here (BOOST_ASIO_SEPARATE_COMPILATION),
// not in every file that includes them: this is most of the project's build time.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
