/* The raw RabbitMQ reference for bench/run.sh's queue scenarios: a direct rabbitmq-c client.
 *   amqp_ref HOST PORT USER PASS QUEUE push SECONDS WINDOW   persistent 100-byte publishes with
 *       publisher confirms, WINDOW unconfirmed at a time (like WINDOW clients each awaiting its
 *       200)
 *   amqp_ref HOST PORT USER PASS QUEUE pop SECONDS WINDOW    basic.consume with prefetch WINDOW,
 *       manual ack of every message (pop with a lease + ack)
 * Prints one line: "<messages per second>" (up to the last message: a pop round that drains
 * the queue early does not count its idle tail). Built by bench/run.sh with cc -lrabbitmq. */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static double Now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void Check(amqp_connection_state_t c, const char* what) {
  amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    fprintf(stderr, "amqp_ref: %s failed\n", what);
    exit(1);
  }
}

int main(int argc, char** argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: amqp_ref HOST PORT USER PASS QUEUE push|pop SECONDS WINDOW\n");
    return 2;
  }
  const char* queue = argv[5];
  int push = strcmp(argv[6], "push") == 0;
  double seconds = atof(argv[7]);
  int window = atoi(argv[8]);
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t* s = amqp_tcp_socket_new(c);
  if (amqp_socket_open(s, argv[1], atoi(argv[2])) != AMQP_STATUS_OK) {
    fprintf(stderr, "amqp_ref: cannot connect\n");
    return 1;
  }
  if (amqp_login(c, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN, argv[3], argv[4])
          .reply_type != AMQP_RESPONSE_NORMAL) {
    fprintf(stderr, "amqp_ref: login failed\n");
    return 1;
  }
  amqp_channel_open(c, 1);
  Check(c, "channel.open");
  amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
  Check(c, "queue.declare");
  char body[101];
  memset(body, 'x', 100);
  body[100] = 0;
  long done = 0;
  double start = Now(), end = start + seconds, last = start;
  if (push) {
    amqp_confirm_select(c, 1);
    Check(c, "confirm.select");
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = 2;
    props.content_type = amqp_cstring_bytes("application/json");
    long sent = 0;
    while (Now() < end) {
      while (sent - done < window) {
        amqp_basic_publish(c, 1, amqp_empty_bytes, amqp_cstring_bytes(queue), 0, 0, &props,
                           amqp_cstring_bytes(body));
        ++sent;
      }
      amqp_frame_t f;
      if (amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK) return 1;
      if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        amqp_basic_ack_t* a = f.payload.method.decoded;
        done = (long)a->delivery_tag;  // confirms arrive in order; multiple covers the rest
        last = Now();
      }
    }
  } else {
    amqp_basic_qos(c, 1, 0, (uint16_t)window, 0);
    Check(c, "basic.qos");
    amqp_basic_consume(c, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    Check(c, "basic.consume");
    while (Now() < end) {
      amqp_envelope_t e;
      struct timeval tv = {1, 0};
      amqp_rpc_reply_t r = amqp_consume_message(c, &e, &tv, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) break;  // queue drained (timeout) or error
      amqp_basic_ack(c, 1, e.delivery_tag, 0);
      amqp_destroy_envelope(&e);
      ++done;
      last = Now();
    }
  }
  printf("%.0f\n", last > start ? done / (last - start) : 0.0);
  return 0;
}
