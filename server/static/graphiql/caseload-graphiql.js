// Caseload's GraphiQL page: every file it loads comes from this server; subscriptions run over
// its websocket on the same endpoint.
// In demo mode a bar above the editor offers the demo users; one click asks the server for a
// fresh token and puts it in the Headers pane as the Authorization header.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("caseload-config").textContent);
  var h = React.createElement;
  // Subscriptions over this server's own websocket (graphql-transport-ws, the client bundled in
  // graphiql.min.js): connection_init carries the Headers pane, Authorization included.
  var socketUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + config.endpoint;
  var fetcher = GraphiQL.createFetcher({ url: config.endpoint, subscriptionUrl: socketUrl });

  function DemoUsers(props) {
    var buttons = config.demoUsers.map(function (user) {
      return h(
        "button",
        {
          key: user.key,
          type: "button",
          "data-demo-user": user.key,
          "aria-pressed": props.current === user.key ? "true" : "false",
          title: user.email,
          onClick: function () { props.onPick(user); },
        },
        user.label
      );
    });
    return h(
      "div",
      { className: "caseload-demo", role: "toolbar", "aria-label": "Demo users" },
      h("strong", null, "Sign in as"),
      buttons,
      props.error
        ? h("span", { className: "caseload-demo-error" }, props.error)
        : h("span", { className: "caseload-demo-note" }, "demo mode: tokens are minted by this server")
    );
  }

  function App() {
    var headers = React.useState(config.headers || "");
    var current = React.useState(null);
    var error = React.useState(null);

    function pick(user) {
      fetch(config.demoTokenUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user: user.key }),
      })
        .then(function (response) {
          if (!response.ok) throw new Error("the server refused a token for " + user.label);
          return response.json();
        })
        .then(function (body) {
          headers[1](JSON.stringify({ Authorization: body.authorization }, null, 2));
          current[1](user.key);
          error[1](null);
        })
        .catch(function (e) { error[1](String(e.message || e)); });
    }

    return h(
      React.Fragment,
      null,
      config.demoUsers
        ? h(DemoUsers, { current: current[0], error: error[0], onPick: pick })
        : null,
      h(
        "div",
        { className: "caseload-graphiql" },
        h(GraphiQL, {
          fetcher: fetcher,
          headers: headers[0],
          defaultQuery: config.defaultQuery,
          defaultEditorToolsVisibility: "headers",
          shouldPersistHeaders: false,
        })
      )
    );
  }

  ReactDOM.createRoot(document.getElementById("caseload-graphiql")).render(h(App));
})();
