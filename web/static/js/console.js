// The console's own script: draws diagrams, runs the modeler forms, and adds
// the CSRF token to htmx requests. Page data arrives in JSON blocks, so the
// Content-Security-Policy can forbid inline scripts.
(function () {
  'use strict';

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute('content') : '';
  }

  document.addEventListener('htmx:configRequest', function (event) {
    event.detail.headers['X-CSRFToken'] = csrfToken();
  });

  // Ask before an action that cannot be undone.
  document.addEventListener('submit', function (event) {
    var button = event.submitter;
    var message = (button && button.dataset.confirm) || event.target.dataset.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  }, true);

  function drawDiagrams() {
    var nodes = document.querySelectorAll('[data-diagram]');
    nodes.forEach(function (node) {
      var data = readJson(node.dataset.diagram);
      if (!data || !data.xml) {
        node.innerHTML = '<p class="provisioning-diagram-error">No diagram is stored for this version.</p>';
        node.dataset.ready = 'error';
        return;
      }
      if (!window.ProvisioningDiagram) {
        node.innerHTML = '<p class="provisioning-diagram-error">The diagram viewer is not installed: run web/frontend/build.sh.</p>';
        node.dataset.ready = 'error';
        return;
      }
      window.ProvisioningDiagram.showDiagram(node.id, data.xml, {
        highlight: data.highlight || [],
        completed: data.completed || []
      }).then(function () {
        node.dataset.ready = 'true';
      }).catch(function (err) {
        node.dataset.ready = 'error';
        console.warn(err);
      });
    });
  }

  function startModeler(form) {
    var status = form.querySelector('[data-modeler-status]');
    var data = readJson(form.dataset.source) || {};
    var editor;
    if (!window.ProvisioningModeler) {
      status.textContent = 'The modeler is not installed: run web/frontend/build.sh.';
      return;
    }
    try {
      if (form.dataset.modeler === 'dmn') {
        editor = window.ProvisioningModeler.openDmnEditor({
          containerId: form.dataset.canvas, xml: data.xml
        });
      } else {
        editor = window.ProvisioningModeler.openModeler({
          canvasId: form.dataset.canvas,
          propertiesId: form.dataset.properties,
          xml: data.xml || undefined
        });
      }
    } catch (err) {
      status.textContent = String(err.message || err);
      return;
    }
    window.consoleEditor = editor;
    // Unsaved: edited here, or sent back by Validate (or a refused Deploy)
    // with changes that are still not deployed. A successful Deploy leaves
    // the page, and the next modeler page starts clean.
    var unsaved = form.dataset.unsaved === 'true';
    var leaving = false;
    form.dataset.dirty = String(unsaved);
    editor.onChange(function () {
      unsaved = true;
      form.dataset.dirty = 'true';
    });
    window.addEventListener('beforeunload', function (event) {
      if (unsaved && !leaving) {
        event.preventDefault();
        event.returnValue = '';
      }
    });
    editor.ready.then(function (warnings) {
      var count = (warnings || []).length;
      status.textContent = count
        ? 'Opened with ' + count + ' import warning(s); check the diagram before deploying.'
        : 'Ready. Validate checks the diagram without deploying it.';
      if (unsaved) {
        status.textContent += ' Your changes are not deployed yet.';
      }
      form.dataset.ready = 'true';
    }).catch(function (err) {
      status.textContent = String(err.message || err);
      form.dataset.ready = 'error';
    });

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      // The diagram travels with the form: Validate brings it back, Deploy
      // stores it; neither loses the changes, so do not ask.
      leaving = true;
      var button = event.submitter;
      var action = form.querySelector('[data-action-field]');
      if (button && action) { action.value = button.value; }
      status.textContent = action && action.value === 'deploy' ? 'Deploying…' : 'Validating…';
      editor.getXml().then(function (xml) {
        document.getElementById('modeler-xml').value = xml;
        HTMLFormElement.prototype.submit.call(form);
      }).catch(function (err) {
        leaving = false;
        status.textContent = String(err.message || err);
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    drawDiagrams();
    document.querySelectorAll('form[data-modeler]').forEach(startModeler);
  });
})();
